"""The engine adapter: the docker SDK, and the engine's HTTP API over its socket for the queries
`ls` and `status` make on every call (loading the SDK would cost more than the whole command).

Everything devup asks the engine directly (not through Compose) goes through here, one module
per job: `client` (the SDK client of an Engine value, and errors translated at this edge),
`queries` (containers and their states, for `ls`, `status` and readiness), `removal` (what is
not ours, and removing what gc or a rollback finds), `volumes`, `pausing` and `copies` (the
data commands' volumes, the containers paused around a copy, and the copy helpers). `labels`
holds the label keys everyone shares. The docker SDK is imported inside functions only.
"""
