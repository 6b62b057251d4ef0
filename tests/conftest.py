from tests.support.redis_fixture import *  # noqa: F403
