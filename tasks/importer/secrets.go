package importer

import (
	"math"
	"regexp"
	"strings"
)

// How import tells a secret, without a prompt. A variable of a service's
// environment becomes a secret name (its value never written anywhere by
// import) when
//
//  1. its name says so: a word PASS, PAT (a personal access token),
//     CREDENTIAL(S) or APIKEY, a word ending in PASSWORD, PASSWD, SECRET
//     or TOKEN (ADMINPASSWORD, ACCESSTOKEN), or a KEY after API, ACCESS, PRIVATE,
//     SECRET, SIGNING, ENCRYPTION, MASTER or SESSION (words are split at
//     '_'; case does not matter);
//  2. its value comes from a compose variable that (1) or (3) marks, or
//     that .env.example beside the file lists without a value;
//  3. its value looks like a credential: a URL with a password
//     (scheme://user:password@host), a private key (PEM), a JSON web
//     token, an AWS access key id, a GitHub, GitLab, Slack or Stripe
//     token, or a long random-looking string (32 characters or more of
//     letters, digits and +/=_-, upper and lower case and digits mixed,
//     at least 4 bits of entropy per character);
//  4. it has no value in the file (compose would pass it through from the
//     shell that runs it): its value comes from outside, which is what the
//     catalog's secrets are.

var (
	secretWord = regexp.MustCompile(`(?i)(^|_)(PASS|PAT|CREDENTIALS?|APIKEY|[A-Z0-9]*(PASSWORD|PASSWD|SECRET|TOKEN)S?)(_|$)`)
	secretKey  = regexp.MustCompile(`(?i)(^|_)(API|ACCESS|PRIVATE|SECRET|SIGNING|ENCRYPTION|MASTER|SESSION)_KEY(_|$)`)

	urlPassword = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:[^/\s@]+@`)
	tokenShapes = []*regexp.Regexp{
		regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
		regexp.MustCompile(`^eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`), // JWT
		regexp.MustCompile(`^(AKIA|ASIA)[0-9A-Z]{16}$`),                              // AWS access key id
		regexp.MustCompile(`^(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}$|^github_pat_[A-Za-z0-9_]{30,}$`),
		regexp.MustCompile(`^glpat-[A-Za-z0-9_-]{20,}$`),
		regexp.MustCompile(`^xox[abprs]-[A-Za-z0-9-]{10,}$`),
		regexp.MustCompile(`^(sk|rk)_(live|test)_[A-Za-z0-9]{16,}$`),
	}
	randomish = regexp.MustCompile(`^[A-Za-z0-9+/=_-]{32,}$`)
)

// secretName reports whether a variable's name marks it a secret.
func secretName(name string) bool {
	return secretWord.MatchString(name) || secretKey.MatchString(name)
}

// secretValue says why a value looks like a credential, or "".
func secretValue(v string) string {
	switch {
	case urlPassword.MatchString(v):
		return "a URL with a password"
	case tokenShapes[0].MatchString(v):
		return "a private key"
	}
	for _, re := range tokenShapes[1:] {
		if re.MatchString(v) {
			return "a token"
		}
	}
	if randomish.MatchString(v) && mixed(v) && entropy(v) >= 4 {
		return "a random-looking string"
	}
	return ""
}

func mixed(s string) bool {
	return strings.ContainsAny(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") &&
		strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz") &&
		strings.ContainsAny(s, "0123456789")
}

// entropy is the Shannon entropy of s's characters, in bits per character.
func entropy(s string) float64 {
	counts := map[rune]int{}
	for _, r := range s {
		counts[r]++
	}
	n := float64(len([]rune(s)))
	h := 0.0
	for _, c := range counts {
		p := float64(c) / n
		h -= p * math.Log2(p)
	}
	return h
}
