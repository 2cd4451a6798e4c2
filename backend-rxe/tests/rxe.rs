//! rxe device tests (work in progress).
fn main() {}
