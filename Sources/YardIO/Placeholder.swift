// YardIO
