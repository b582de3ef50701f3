"""Entry point the Pulumi engine runs (`pulumi preview --policy-pack policies`): build the pack, serve it.

Constructing `PolicyPack` starts the analyzer's gRPC server and blocks, so nothing imports this file; the
rules live in the modules `policies.pack` collects, which `fleet plan` and the tests use as they are.
"""

from pulumi_policy import PolicyPack

from policies.pack import DESCRIPTION, PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES, description=DESCRIPTION)
