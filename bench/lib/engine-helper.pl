#!/usr/bin/env perl
# Helpers for bench/engine.sh (run from the repository root).  The recipients
# are those of bench/lib/dispatch-helper.pl (8:acs:bench-rNNNNN, one fcmv1
# device each, registered with "dispatch-helper.pl register"); this adds:
#
#   engine-helper.pl user PORT KEY RAWID NDEV
#       registers NDEV fcmv1 devices (d1..dNDEV, distinct handles) for one
#       user, through the signed API
#   engine-helper.pl lua OUT PATH PER FIRST NRECIP TAG
#       a wrk script POSTing PER chat events per request; the recipients go
#       round bench-rFIRST .. bench-r(FIRST+NRECIP-1) across requests (event
#       j of the whole run goes to recipient j mod NRECIP), so that single
#       events spread over NRECIP device handles; every event id distinct
#   engine-helper.pl chat OUT NEVENTS FIRST NRECIP
#       a delivery of NEVENTS chat events over the recipients (round robin),
#       each id written as @@ID@@ (bench/lib/engine-load.py fills them in)
#   engine-helper.pl chat-user OUT NEVENTS RAWID
#       the same, every event to one user
#   engine-helper.pl call OUT RAWID
#       a delivery of one incoming call (t/data/events/eg-incoming-call.json)
#       to RAWID, its id written as @@ID@@ and its eventTime as @@TIME@@
#       (engine-load.py writes the time of each request: a call of the
#       fixture's 2025 time would be stale, acs_notify_call_ttl)
#
# Event ids made here (wrk) are "TTTTHHHH-LLLL-4III-b538-4cb8a2f71da6" as in
# dispatch-helper.pl: TTTT = TAG (4 hex digits, distinct per wrk run),
# HHHHLLLL = request counter, III = index in the request.  What the two
# helpers share is in bench/lib/AcsBench.pm.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin", "$FindBin::Bin/../../t/lib";
use AcsBench qw($CHAT $CALL recipient write_file event_with_id_mark signed_put wrk_lua);

my $cmd = shift // die "usage: see the top of $0\n";

if ($cmd eq 'user') {
    my ($port, $key, $raw, $ndev) = @ARGV;
    (my $tag = $raw) =~ s/[^A-Za-z0-9]//g;
    for my $d (1 .. $ndev) {
        my $body = sprintf '{"platform":"fcmv1","handle":"%s-fcm-%02d:APA91bE_0123456789abcdef"}',
            substr($tag, -16), $d;
        signed_put($port, $key, $raw, "d$d", $body, "$raw d$d");
    }

} elsif ($cmd eq 'lua') {
    my ($out, $path, $per, $first, $nrecip, $tag) = @ARGV;
    wrk_lua($out, $path, $per, $first, $nrecip, $tag, 1);

} elsif ($cmd eq 'chat') {
    my ($out, $n, $first, $nrecip) = @ARGV;
    my @ev = map { event_with_id_mark($CHAT, recipient($first + $_)) } 0 .. $nrecip - 1;
    write_file($out, '[' . join(',', map { $ev[$_ % $nrecip] } 0 .. $n - 1) . ']');

} elsif ($cmd eq 'chat-user') {
    my ($out, $n, $raw) = @ARGV;
    my $ev = event_with_id_mark($CHAT, $raw);
    write_file($out, '[' . join(',', ($ev) x $n) . ']');

} elsif ($cmd eq 'call') {
    my ($out, $raw) = @ARGV;
    (my $ev = event_with_id_mark($CALL, $raw))
        =~ s/"eventTime":"[^"]*"/"eventTime":"\@\@TIME\@\@"/ or die "no eventTime\n";
    write_file($out, '[' . $ev . ']');

} else {
    die "unknown command $cmd\n";
}
