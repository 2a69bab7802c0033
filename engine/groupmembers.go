package engine

import "github.com/sluicemq/sluice/wire"

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

// GroupSource reports a consumer group another face keeps (the Kafka listener's coordinator): its
// generation and its members, each with the topic and partitions it holds; ok is false when the
// face has no group of that name. It may take the face's own locks and must not call back into the
// engine's group methods.
type GroupSource func(name string) (generation int32, members []wire.GroupMember, ok bool)

// AddGroupSource registers src: DescribeGroup then lists the members it reports beside the native
// ones, and DeleteGroup refuses a group it reports members of, so that deleting, seeking or
// resetting a group (the CLI checks DescribeGroup first) keeps off a group in use through another
// face. GroupHasMembers, which that face asks, still counts native members only. The returned
// func unregisters src.
func (e *Engine) AddGroupSource(src GroupSource) (remove func()) {
	e.groupSrcMu.Lock()
	defer e.groupSrcMu.Unlock()
	if e.groupSources == nil {
		e.groupSources = map[int]GroupSource{}
	}
	id := e.groupSrcNext
	e.groupSrcNext++
	e.groupSources[id] = src
	return func() {
		e.groupSrcMu.Lock()
		defer e.groupSrcMu.Unlock()
		delete(e.groupSources, id)
	}
}

// otherGroupMembers is what the registered sources report of the group name: the highest
// generation among those that know it and all their members. Call it without the engine's group
// locks.
func (e *Engine) otherGroupMembers(name string) (generation int32, members []wire.GroupMember, ok bool) {
	e.groupSrcMu.Lock()
	srcs := make([]GroupSource, 0, len(e.groupSources))
	for _, src := range e.groupSources {
		srcs = append(srcs, src)
	}
	e.groupSrcMu.Unlock()
	for _, src := range srcs {
		if gen, ms, known := src(name); known {
			generation, members, ok = max(generation, gen), append(members, ms...), true
		}
	}
	return generation, members, ok
}
