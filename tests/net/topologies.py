"""The two networks the tests/net scenarios use, built in a Lab."""

from __future__ import annotations

from tests.helpers.netlab import Host, Lab, Router


def client_behind_nat(lab: Lab) -> tuple[Host, Router, Host]:
    """(server, nat, client): clients on 10.231.2.0/24 masqueraded to the server's 10.231.1.0/24."""
    server, client = lab.host("server"), lab.host("client")
    nat = lab.router("nat", wan=(server, "10.231.1.0/24"), lan=(client, "10.231.2.0/24"))
    return server, nat, client


def server_behind_one_to_one_nat(lab: Lab, public: str) -> tuple[Host, Host]:
    """(client, server): the server's private address is reachable only as `public` (1:1 NAT
    on the edge router); the client has no route to the private address."""
    client, server = lab.host("client"), lab.host("server")
    edge = lab.router("edge", wan=(client, "10.231.3.0/24"), lan=(server, "10.231.1.0/24"),
                      nat="none")
    edge.one_to_one(public, server.address)
    return client, server
