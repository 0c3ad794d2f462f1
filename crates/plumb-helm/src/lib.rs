//! Helm 3 chart loading and Go text/template rendering, plus Helm release storage.
