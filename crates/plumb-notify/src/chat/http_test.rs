//! HTTP-level test of the chat and incident types (filled in next).
