package jobs

// SetAfterInit installs a hook run after a Koji reservation is stored, to
// simulate a worker dying right after CGInitBuild.
func SetAfterInit(q *Queue, f func() error) { q.afterInit = f }
