//! Pure in-process kustomize v5 renderer: a directory in, ordered Kubernetes objects out.
