"""The Prisma CLI with an unreachable database: it runs, and every command that needs the database fails
as Prisma's does (P1001)."""

import sys

if any(arg in ("migrate", "db") for arg in sys.argv[1:]):
    print("Error: P1001: Can't reach database server", file=sys.stderr)
    sys.exit(1)
print("prisma (stand-in for a client whose database is unreachable)")
