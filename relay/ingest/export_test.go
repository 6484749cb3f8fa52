package ingest

// PooledSlabs is how many decode slabs s keeps for reuse.
func PooledSlabs(s *Server) int { return s.slabs.Len() }
