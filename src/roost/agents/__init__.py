"""LiveKit Agents: the `/agent` worker protocol, job dispatch into rooms, AgentDispatchService."""
