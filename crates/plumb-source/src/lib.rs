//! Git fetch and checkout with libgit2 into a persistent cache, and deterministic tar.gz artifacts.
