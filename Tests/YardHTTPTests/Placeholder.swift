import Testing
@Test func placeholderYardHTTPTests() {}
