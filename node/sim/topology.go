package sim

import "math/rand/v2"

// link joins two hosts by index.
type link [2]int

// topology returns the links of a connected random graph on n nodes in
// which no node has more than d links. It grows a random spanning tree,
// attaching each node to a random earlier node that still has room, then
// adds random links between nodes with fewer than d until no pair fits.
// It needs n >= 2 and 2 <= d <= n-1.
func topology(n, d int, rng *rand.Rand) []link {
	degree := make([]int, n)
	linked := make(map[link]bool)
	var links []link
	add := func(a, b int) {
		links = append(links, link{a, b})
		linked[link{a, b}], linked[link{b, a}] = true, true
		degree[a]++
		degree[b]++
	}

	order := rng.Perm(n)
	// open holds the nodes placed so far that have fewer than d links.
	// With d >= 2 it is never empty: the newest node has one link.
	open := []int{order[0]}
	for _, v := range order[1:] {
		j := rng.IntN(len(open))
		u := open[j]
		add(u, v)
		if degree[u] == d {
			open = removeAt(open, j)
		}
		open = append(open, v)
	}
	fillLinks(d, rng, degree, linked, open, add)
	return links
}

// fillLinks adds random links between the open nodes, which have fewer
// than d links, until fewer than two are left or a run of random tries
// finds no pair that is not yet linked.
func fillLinks(d int, rng *rand.Rand, degree []int, linked map[link]bool, open []int, add func(a, b int)) {
	misses := 0
	for len(open) >= 2 && misses < 20*len(open) {
		i, j := rng.IntN(len(open)), rng.IntN(len(open))
		a, b := open[i], open[j]
		if a == b || linked[link{a, b}] {
			misses++
			continue
		}
		misses = 0
		add(a, b)
		// Delete the higher index first so the lower one stays valid.
		for _, k := range []int{max(i, j), min(i, j)} {
			if degree[open[k]] == d {
				open = removeAt(open, k)
			}
		}
	}
}

// caLinks returns the links of the CA host, index n, to d distinct random
// nodes.
func caLinks(n, d int, rng *rand.Rand) []link {
	links := make([]link, 0, d)
	for _, v := range rng.Perm(n)[:d] {
		links = append(links, link{n, v})
	}
	return links
}

// removeAt removes s[i] by moving the last element into its place, so
// the order of s changes.
func removeAt(s []int, i int) []int {
	s[i] = s[len(s)-1]
	return s[:len(s)-1]
}
