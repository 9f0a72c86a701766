"""How well supportd reads real mail: measurements shared by the tests (which hold the defaults to
targets) and by ``bench/`` (which prints them as JSON). They read the repository's rules and the
shared corpus (``../shared/corpus``), so they are maintainer tools, not part of the daemon's path."""
