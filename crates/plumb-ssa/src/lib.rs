//! Server-side apply engine: staged apply, drift detection, prune and kstatus health.
