"""How an engine's CI uses pcg-inspect: the decoder layer must stay capturable, and no commit may bring back a
graph break, an error finding or a failed piece that the baseline did not have.

    pytest examples/engine_ci                         # compare with the saved baselines
    pytest examples/engine_ci --pcg-update-baseline   # record them again (an intended change)

The ``pcg_inspect`` fixture comes from pcg-inspect's pytest plugin (installed with the package); its
defaults come from the ini options ``pcg_inspect_sizes`` / ``pcg_inspect_device`` (here: pytest.ini).
"""

from pathlib import Path

from pcg_inspect import ModelOptions
from pcg_inspect.testing import assert_capturable

HERE = Path(__file__).resolve().parent
LAYER = str(HERE.parent / "nsa_indexer" / "after.py") + ":make"
# A Llama-3-8B decoder layer, shrunk to CPU size (the engine's CI would use its own model code).
SMALL_LLAMA = ModelOptions(overrides=("hidden_size=128", "intermediate_size=256", "num_attention_heads=4",
                                      "num_key_value_heads=2", "head_dim=32"))


def test_indexer_layer_is_capturable(pcg_inspect):
    report = pcg_inspect.assert_capturable(LAYER)
    assert report.split_ops == ("nsa.indexer_topk",)  # the top-k runs eagerly between captured pieces


def test_llama_decoder_layer_is_capturable():
    assert_capturable("llama3-8b", sizes=(1, 8), model=SMALL_LLAMA)


def test_no_regression_against_the_baseline(pcg_inspect):
    pcg_inspect.assert_no_regression(LAYER, baseline=HERE / "baselines" / "nsa_indexer_after.json")
