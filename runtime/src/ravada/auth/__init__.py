"""Login backends (local accounts, LDAP/Active Directory) and groups.

The front logs people in through :class:`ravada.auth.service.Authenticator`;
rvd_back's CLI manages groups through :mod:`ravada.auth.groups`. This package's
``__init__`` imports nothing heavy: ``ravada.config`` reads ``auth.settings``, and
python-ldap is imported only when ``ldap`` is in ``auth.order``.
"""
