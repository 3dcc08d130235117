"""Digests (通报, DOMAIN.md §7): the daily, weekly and monthly summaries sent to robots and webhooks.

``periods`` says which period a digest covers and when it is due; ``content`` counts what it
says from the pipeline's latest samples, the grid registry and the kept daily lights; ``render``
writes it as Markdown for the chat robots or as JSON; ``ledger`` keeps it in the state database
(or a ledger the replicas share) so it goes out once per period; ``service`` runs that in the
daemon, ``replay`` in ``gridwatch digest``.
"""
