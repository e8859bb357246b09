package gc

import (
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// plan returns a repository's garbage manifests, in the order they can go:
// a parent before its children, a subject before its referrers (the
// re-check in metadata refuses a child whose parent is still there, and a
// referrer whose subject is).
//
// A manifest is kept when a tag points at it (live, or deleted within the
// restore window), when it was linked or needed after h.untagged, or when a
// kept manifest needs it: an index its children, a referrer its subject,
// and a subject its referrers (signatures live as long as what they sign).
// With no untagged horizon every manifest is kept.
func plan(nodes []*metadata.ManifestNode, h horizons) []*metadata.ManifestNode {
	if h.untagged == 0 {
		return nil
	}
	byDigest := make(map[oci.Digest]*metadata.ManifestNode, len(nodes))
	referrers := map[oci.Digest][]*metadata.ManifestNode{}
	for _, n := range nodes {
		byDigest[n.Digest] = n
		if n.Subject != "" {
			referrers[n.Subject] = append(referrers[n.Subject], n)
		}
	}
	kept := map[oci.Digest]bool{}
	var stack []*metadata.ManifestNode
	keep := func(n *metadata.ManifestNode) {
		if n != nil && !kept[n.Digest] {
			kept[n.Digest] = true
			stack = append(stack, n)
		}
	}
	for _, n := range nodes {
		if n.Tagged || n.Linked >= h.untagged {
			keep(n)
		}
	}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range n.Children {
			keep(byDigest[c])
		}
		keep(byDigest[n.Subject])
		for _, r := range referrers[n.Digest] {
			keep(r)
		}
	}

	// Kahn's order over the garbage: an edge from each parent to its
	// children and from each subject to its referrers. A cycle, and what waits
	// on it, stays.
	waits := map[oci.Digest]int{}
	next := map[oci.Digest][]*metadata.ManifestNode{}
	edge := func(from oci.Digest, to *metadata.ManifestNode) {
		if f := byDigest[from]; f != nil && !kept[from] && f != to {
			next[from] = append(next[from], to)
			waits[to.Digest]++
		}
	}
	var garbage []*metadata.ManifestNode
	for _, n := range nodes {
		if kept[n.Digest] {
			continue
		}
		garbage = append(garbage, n)
		edge(n.Subject, n)
	}
	for _, n := range garbage {
		for _, c := range n.Children {
			if child := byDigest[c]; child != nil && !kept[c] {
				edge(n.Digest, child)
			}
		}
	}
	order := make([]*metadata.ManifestNode, 0, len(garbage))
	placed := map[oci.Digest]bool{}
	for _, n := range garbage {
		if waits[n.Digest] == 0 {
			order = append(order, n)
			placed[n.Digest] = true
		}
	}
	for i := 0; i < len(order); i++ {
		for _, to := range next[order[i].Digest] {
			if waits[to.Digest]--; waits[to.Digest] == 0 && !placed[to.Digest] {
				order = append(order, to)
				placed[to.Digest] = true
			}
		}
	}
	// What a cycle leaves (and what waits on it) the re-checks would
	// refuse: it is not garbage, so that a dry run reports what a run does.
	return order
}
