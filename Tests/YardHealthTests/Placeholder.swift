import Testing
@Test func placeholderHealth() {}
