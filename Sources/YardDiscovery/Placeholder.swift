// YardDiscovery
