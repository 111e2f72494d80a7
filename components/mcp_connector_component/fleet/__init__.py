"""Fleet operations over McpConnector: install/uninstall one cluster, render manifests, roll out stacks.

Command-line front ends (``mcp-connector install | uninstall | render | rollout``) live in
``cli``; each command's work lives in a module of its own.
"""
