#!/usr/bin/env perl
# Helpers for bench/dispatch.sh (run from the repository root):
#
#   dispatch-helper.pl ports N                    N free loopback ports
#   dispatch-helper.pl ca DIR                     throwaway CA + *.servicebus.windows.net cert
#   dispatch-helper.pl register PORT KEY FIRST LAST [NDEV]
#                                                 recipients bench-rFIRST..bench-rLAST, NDEV
#                                                 devices each (1: fcmv1; 2: and apns; 3: and
#                                                 another fcmv1), through the signed API
#   dispatch-helper.pl lua OUT PATH PER FIRST NRECIP TAG
#                                                 a wrk script POSTing PER chat events per
#                                                 request, spread over NRECIP recipients from
#                                                 bench-rFIRST, every event id distinct
#   dispatch-helper.pl wave PORT PATH NREQ PER FIRST NRECIP TAG
#                                                 NREQ such requests, one after the other;
#                                                 prints the status counts
#
# Event ids are "TTTTHHHH-LLLL-4III-b538-4cb8a2f71da6": TTTT = TAG (4 hex
# digits, distinct per wrk run), HHHHLLLL = request counter, III = index of
# the event in the request; de-duplication therefore never skips a push.
# What this shares with engine-helper.pl is in bench/lib/AcsBench.pm.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin", "$FindBin::Bin/../../t/lib";
use IO::Socket::INET;
use AcsBench qw(recipient event_parts http signed_put wrk_lua);

sub handle { sprintf 'bench-fcm-token-%05d:APA91bE_0123456789abcdef', $_[0] }

my $cmd = shift // die "usage: see the top of $0\n";

if ($cmd eq 'ports') {
    my $n = shift // 1;
    my @s = map { IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                        LocalPort => 0, ReuseAddr => 1) or die $! } 1 .. $n;
    print join(' ', map { $_->sockport } @s), "\n";

} elsif ($cmd eq 'ca') {
    require AcsTest::FakeNH;
    my $c = AcsTest::FakeNH::setup_ca(shift // die "ca DIR\n");
    print "$c->{ca}\n";

} elsif ($cmd eq 'register') {
    my ($port, $key, $first, $last, $ndev) = @ARGV;
    for my $k ($first .. $last) {
      for my $d (1 .. ($ndev // 1)) {
        # d1 and d3 Android phones, d2 an iPhone
        my $body = $d == 2
            ? '{"platform":"apns","handle":"' . sprintf('%064x', $k) . '"}'
            : '{"platform":"fcmv1","handle":"' . handle($k) . ($d > 1 ? "-$d" : '') . '"}';
        signed_put($port, $key, recipient($k), "d$d", $body, recipient($k));
      }
    }

} elsif ($cmd eq 'lua') {
    my ($out, $path, $per, $first, $nrecip, $tag) = @ARGV;
    wrk_lua($out, $path, $per, $first, $nrecip, $tag, 0);

} elsif ($cmd eq 'wave') {
    my ($port, $path, $nreq, $per, $first, $nrecip, $tag) = @ARGV;
    my @p = map { [ event_parts($first + $_) ] } 0 .. $nrecip - 1;
    my %st;
    for my $n (1 .. $nreq) {
        my @ev = map {
            my $k = ($_ - 1) % $nrecip;
            $p[$k][0] . sprintf('%s%04x-%04x-4%03x-b538-4cb8a2f71da6', $tag,
                                int($n / 65536) % 65536, $n % 65536, $_) . $p[$k][1]
        } 1 .. $per;
        my ($s) = http($port, POST => $path, '[' . join(',', @ev) . ']',
                       'Content-Type' => 'application/json',
                       'aeg-event-type' => 'Notification');
        $st{$s}++;
    }
    print join(' ', map { "$_:$st{$_}" } sort keys %st), "\n";

} else {
    die "unknown command $cmd\n";
}
