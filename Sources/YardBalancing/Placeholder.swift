// YardBalancing
