// The scenario tests are generated from the files under topologies/ at
// compile time (rstest #[files]): rebuild when a topology is added.
fn main() {
    println!("cargo:rerun-if-changed=../topologies/scenarios");
    println!("cargo:rerun-if-changed=../topologies/examples");
}
