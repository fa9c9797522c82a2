package warehouse

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Age bands, from youngest. The first adult band is 18-29 so that minors
// are never mixed with adults in a cohort; then decades up to 80+.
const (
	AgeBandUnknown = "unknown"
	AgeBandMinor   = "0-17"
	AgeBandOldest  = "80+"
)

// maxAge bounds a plausible age; older (or future) birth years are treated
// as unknown rather than put in a band.
const maxAge = 130

// AgeBand is the age band of a person born in birthYear at time at (UTC):
// "0-17", "18-29", "30-39", ..., "70-79", "80+", or "unknown" when the birth
// year is missing (0 or less) or implausible. Age is the difference of the
// years: only the birth year is stored, so a band can be one year off
// around the birthday. It is the Go twin of the age_band column of
// UserDimension, which uses the server's current UTC year.
func AgeBand(birthYear int, at time.Time) string {
	if birthYear <= 0 {
		return AgeBandUnknown
	}
	age := at.UTC().Year() - birthYear
	switch {
	case age < 0 || age > maxAge:
		return AgeBandUnknown
	case age < 18:
		return AgeBandMinor
	case age < 30:
		return "18-29"
	case age < 80:
		d := age / 10 * 10
		return strconv.Itoa(d) + "-" + strconv.Itoa(d+9)
	default:
		return AgeBandOldest
	}
}

// ageBandSQL is AgeBand in ClickHouse SQL over the birth year column by.
const ageBandSQL = `multiIf(by_ <= 0, 'unknown',
		toInt32(toYear(now(), 'UTC')) - by_ < 0 OR toInt32(toYear(now(), 'UTC')) - by_ > 130, 'unknown',
		toInt32(toYear(now(), 'UTC')) - by_ < 18, '0-17',
		toInt32(toYear(now(), 'UTC')) - by_ < 30, '18-29',
		toInt32(toYear(now(), 'UTC')) - by_ < 80, concat(toString(intDiv(toInt32(toYear(now(), 'UTC')) - by_, 10) * 10), '-', toString(intDiv(toInt32(toYear(now(), 'UTC')) - by_, 10) * 10 + 9)),
		'80+')`

// UserDimension returns a subquery (SQL text, no surrounding parentheses)
// with exactly one ? placeholder, for the tenant id. It yields one row per
// current user of that tenant, with columns
//
//	user_id      String
//	age_band     String  AgeBand of the latest stated birth year, or "unknown"
//	sex          String  latest stated: female, male, other, unknown ("unknown" if never stated)
//	region       String  latest stated ISO 3166 code, or "unknown"
//	device_model String  model of the latest paired device, or "unknown"
//
// A user is current when they have any profile or device event and no
// stored erasure. Each attribute is the one stated by the latest event
// (by occurred_at, then log position) that states it, because profile
// updates are partial. Use it as a join source, e.g.
//
//	SELECT d.age_band, count() FROM vitals.readings_daily AS r
//	ALL INNER JOIN (<UserDimension>) AS d USING user_id
//	WHERE tenant_id = ? ...
//
// (bind the dimension's ? first, in the order the placeholders appear).
// Use ALL, and aliases: current releases require the aliases and read ANY
// INNER JOIN as one row per key on both sides (docs/clickhouse.md).
// database must be a validated identifier (as Config.Database is by Open).
func UserDimension(database string) string {
	return userDimension(database, ageBandSQL, "")
}

// UserDimensionAsOf is UserDimension as it stood at asOfMs (epoch ms): the
// profile and device events ingest received by then, and ages in that
// moment's year. Its one ? placeholder is the tenant id, as in
// UserDimension. An erased user stays out of it whenever they were erased:
// erasure is not undone for a past moment.
func UserDimensionAsOf(database string, asOfMs int64) string {
	year := fmt.Sprintf("toYear(toDateTime(%d), 'UTC')", floorSeconds(asOfMs))
	return userDimension(database, strings.ReplaceAll(ageBandSQL, "toYear(now(), 'UTC')", year), fmt.Sprintf(" AND e_in <= %d", asOfMs))
}

// floorSeconds is an epoch-ms instant in whole seconds, rounded down.
func floorSeconds(ms int64) int64 {
	s := ms / 1000
	if ms%1000 < 0 {
		s--
	}
	return s
}

// userDimension is UserDimension with ageBand as the age band's SQL and
// known as a further condition on the events (their ingest time e_in).
func userDimension(database, ageBand, known string) string {
	return fmt.Sprintf(`SELECT user_id, %s AS age_band,
		if(sx_ = '', 'unknown', sx_) AS sex,
		if(rg_ = '', 'unknown', rg_) AS region,
		if(dm_ = '', 'unknown', dm_) AS device_model
	FROM (
		SELECT user_id,
			argMaxIf(e_birth_year, (e_at, e_off), e_birth_year > 0) AS by_,
			argMaxIf(e_sex, (e_at, e_off), e_sex != '') AS sx_,
			argMaxIf(e_region, (e_at, e_off), e_region != '') AS rg_,
			argMaxIf(e_model, (e_at, e_off), e_paired = 1) AS dm_
		FROM (
			SELECT tenant_id AS e_tenant, user_id, birth_year AS e_birth_year, sex AS e_sex, region AS e_region,
				'' AS e_model, toUInt8(0) AS e_paired, occurred_at_ms AS e_at, log_offset AS e_off, ingested_at_ms AS e_in
			FROM %[2]s.%[3]s
			UNION ALL
			SELECT tenant_id AS e_tenant, user_id, toInt32(0) AS e_birth_year, '' AS e_sex, '' AS e_region,
				model AS e_model, toUInt8(kind = 'paired') AS e_paired, occurred_at_ms AS e_at, log_offset AS e_off, ingested_at_ms AS e_in
			FROM %[2]s.%[4]s
		)
		WHERE e_tenant = ?%[6]s AND (e_tenant, user_id) NOT IN (SELECT tenant_id, user_id FROM %[2]s.%[5]s)
		GROUP BY user_id
	)`, ageBand, database, ProfileEventsTable, DeviceEventsTable, ErasedUsersTable, known)
}

// NotErased is a condition, without placeholders, that is true for rows of
// users with no stored erasure. Add it to every query over a table with
// tenant_id and user_id columns: erasure deletes rows with asynchronous
// mutations, and this hides the user from the moment the erasure is
// stored. database must be a validated identifier.
func NotErased(database string) string {
	return fmt.Sprintf("(tenant_id, user_id) NOT IN (SELECT tenant_id, user_id FROM %s.%s)", database, ErasedUsersTable)
}
