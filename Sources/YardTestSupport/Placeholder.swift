// YardTestSupport
