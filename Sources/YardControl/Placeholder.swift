// YardControl
