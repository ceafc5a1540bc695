//! An example of a CNI developer's own crate: `tests/datapath.rs` brings up
//! a two-node lab whose pods are plumbed by a CNI plugin chain (here the
//! reference `bridge` + `host-local` plugins, standing in for yours) and
//! asserts with real packets what connects, which source the server saw
//! and which path the packets took. Run it as root: `sudo -E cargo test -p my-cni-test`.
