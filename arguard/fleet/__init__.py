"""The fleet: hosts sharing their decisions (and fleet-scoped correlation) through one
PostgreSQL database (docs/fleet.md).

- decision.py: the record of one fleet decision and the strict reading of one from the
  database (text another host, or anyone with access to the database, wrote).
- database.py: every SQL statement the fleet runs on PostgreSQL, its schema and migrations
  (`arguard fleet init`); the only module that imports psycopg.
- inbox.py: decisions of other hosts through this host's own respond stage.
- facts.py: the compact facts (rule, key, time) of fleet-scoped frequency rules.
- link.py: the daemon's connection to the fleet: push (LISTEN/NOTIFY), catch-up, the SQLite
  outbox sent on reconnect, and the figures `arguard status` shows.
"""
