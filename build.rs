//! Build script of the `plumb` binary: link it at a fixed address.
//!
//! A position-independent executable pays, at every start, for the loader
//! rewriting ~58,000 absolute pointers (vtables, static tables) and for the
//! copy-on-write faults of the megabyte they live in: about a millisecond,
//! a sixth of a small `plumb helm template`. helm, kubectl and Flux's
//! controllers are Go binaries, which are not PIE on linux/amd64 either.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=plumb=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
