package sample

import "sort"

// Profile is a synthetic profile for a sample user: the Fitbit export has
// no demographics, so the demo states these to show cohorts. They are made
// up and say nothing about the real participants.
type Profile struct {
	UserID    string
	BirthYear int
	Sex       string // female, male
	Region    string // ISO 3166 code
}

// syntheticProfiles are assigned in user-id order. Five of the eight users
// share a sex and five a region, so that with the query service's default
// minimum of five users per cohort the dashboard shows one cohort of each
// and suppresses the other.
var syntheticProfiles = []struct {
	birthYear   int
	sex, region string
}{
	{1984, "female", "US-CA"}, {1979, "male", "US-CA"}, {1991, "female", "GB"}, {1968, "female", "US-CA"},
	{1987, "male", "GB"}, {1995, "female", "US-CA"}, {1973, "male", "GB"}, {1982, "female", "US-CA"},
}

// Profiles returns a synthetic profile for each distinct user of rows, by
// user id.
func Profiles(rows []HeartRate) []Profile {
	seen := map[string]bool{}
	var users []string
	for _, r := range rows {
		if !seen[r.UserID()] {
			seen[r.UserID()] = true
			users = append(users, r.UserID())
		}
	}
	sort.Strings(users)
	out := make([]Profile, len(users))
	for i, u := range users {
		p := syntheticProfiles[i%len(syntheticProfiles)]
		out[i] = Profile{UserID: u, BirthYear: p.birthYear, Sex: p.sex, Region: p.region}
	}
	return out
}
