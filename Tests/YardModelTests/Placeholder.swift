import Testing
@Test func placeholderYardModelTests() {}
