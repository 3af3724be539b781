"""Workflows: durable orchestration of functions (DESIGN.md §7).

The core knows no wire face. `definition` parses and validates Amazon States Language; `machine.step` is the
interpreter as a pure function of (definition, execution state, event, now, random source) returning the new
state, the commands to carry out (invoke a function, set a timer) and the history events to record. The
`engine` applies those commands durably on the store's database; the faces (Step Functions API, OpenWhisk
sequences and conductors, the Lambda durable-execution control plane, polyfn's own `/v1/workflows`) are thin
modules that translate their wire shapes to the service's calls.
"""
