//! Flux v2 GA compatible CRD types, kstatus conditions and frozen identifiers.
