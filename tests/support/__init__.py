"""What the tests share (not tests themselves): the CLI runner, plan builders, the fake and real servers,
free ports, waiting for a server, report and browser helpers. Fixtures are defined only in tests/conftest.py."""
