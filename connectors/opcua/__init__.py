"""OPC UA connector (asyncua): subscriptions and polling, discovery, security, reconnect."""
