import Testing
@Test func placeholderBalancing() {}
