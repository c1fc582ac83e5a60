import Testing
@Test func placeholderYardIOTests() {}
