"""powerflow api: the Litestar application (REST, live WebSocket, auth, static dashboard)."""
