import sys

sys.exit("bye")  # MARK:exit_message


def make(tokens: int = 8):
    raise AssertionError("never reached")
