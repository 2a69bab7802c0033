package engine

// GroupHasMembers reports whether the group named name has native members: consumer-group
// subscriptions or work-queue members. Another face that keeps its own groups (the Kafka
// listener's coordinator) asks it to keep off names native members use. It takes the queue
// table's and the group table's locks in turn, never together.
func (e *Engine) GroupHasMembers(name string) bool {
	queued := e.queueGroups()
	e.groups.mu.Lock()
	defer e.groups.mu.Unlock()
	return e.groups.hasMembersLocked(name, queued)
}
