"""Official-SDK scenarios, each an async function run in a child process by `run_scenario`."""
