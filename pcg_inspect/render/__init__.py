"""Views of a Report. Each renderer returns content; ``pcg_inspect._io`` writes files."""
