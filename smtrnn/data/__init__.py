"""What the methods train on: the seeded synthetic tasks (`tasks`), the real-data tasks text and pixels (`real`,
reading `text` and `images`), and stored teacher memories (`labels`, label once, train many).

Every task is a `tasks.Task`; `tasks.make_task` and `tasks.build_task` know them all: the synthetic ones by
definition, text, pixels, arrays and passkey because loading this package registers them (`real` builds on
`tasks`, never the
other way round, so there is no import cycle).
"""

from smtrnn.data import passkey, real, tasks  # noqa: F401  (real and passkey register their tasks)
