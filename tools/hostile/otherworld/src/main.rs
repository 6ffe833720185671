//! A perfectly good component of another world (`wasi:cli/command`): the
//! loader must refuse it with a `load_error` that says so.

fn main() {
    println!("I am a command, not a tool");
}
