fn main() {
    println!("terrace");
}
