//! plumb-eks integration tests (known answers, moto, secret hygiene) as one test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod botocore_kat;
mod ecr;
mod moto;
mod no_secrets;
mod web_identity;
