// YardProxy
