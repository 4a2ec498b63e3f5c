# Pushes over HTTP/2, the default when the hub offers it: a stock nginx
# with TLS and HTTP/2 stands in for the hub's front end (it checks nothing,
# the FakeNH suites do that); many pushes of one delivery share its
# connections as HTTP/2 streams, and every one is answered once.  With
# http2=off the same server gets HTTP/1.1.
#
# Like Notification Hubs, the sink reads the whole push before it answers.
# A plain "return 201" answers on the headers and then resets the stream
# while the body is still coming; libcurl 7.88 may then report the transfer
# as failed before it has parsed the status, and the push is rightly
# retried (sent twice, at least once): see docs/dispatch.md.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Util;
use AcsTest::Server;
use AcsTest::Sink;

my ($sink, $tls) = AcsTest::Sink::start('330-sink', listen => 'ssl http2');

my $srv = AcsTest::Server->new('330-dispatch-http2');
my $root = $srv->root;

$srv->write_conf(workers => 1, http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $root/registry max_devices=100;
    acs_notify_hub main "connection_string=$AcsTest::Sink::CONNECTION_STRING" hub=acs-push
                   connect_to=127.0.0.1:${\ $sink->port} ca_file=$tls->{ca}
                   max_connections=2;
    acs_notify_hub plain "connection_string=$AcsTest::Sink::CONNECTION_STRING" hub=acs-plain
                   connect_to=127.0.0.1:${\ $sink->port} ca_file=$tls->{ca}
                   max_connections=2 http2=off;
HTTP
        location = /eg { acs_notify_eventgrid hub=main; }
        location = /eg-plain { acs_notify_eventgrid hub=plain; }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=;
        }
SERVER
$srv->start;

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $ok = 0;
$ok += $srv->register($BOB, "d$_", platform => 'fcmv1', handle => "h2-token-$_") == 201 for 1 .. 40;
is($ok, 40, '40 devices registered');

my ($st) = $srv->request(POST => '/eg', fixture('eg-chat-message-received.json'),
                         { 'aeg-event-type' => 'Notification', 'Content-Type' => 'application/json' });
is($st, 200, 'a delivery with 40 pushes: 200');

my (undef, undef, $status) = $srv->request(GET => '/status');
like($status, qr/"fcmv1":\{"sent":40,/, '40 pushes sent');

my $second = fixture('eg-chat-message-received.json') =~ s/02272459-badb/12272459-badb/r;
($st) = $srv->request(POST => '/eg-plain', $second,
                      { 'aeg-event-type' => 'Notification', 'Content-Type' => 'application/json' });
is($st, 200, 'the same through a hub with http2=off: 200');

$sink->stop;
my @lines = AcsTest::Sink::pushes($sink);
my @h2 = grep { m{ /acs-push/} } @lines;
my @h1 = grep { m{ /acs-plain/} } @lines;
is(scalar @h2, 40, 'the sink answered 40 requests through the default hub, none twice');
is(scalar(grep { m{^HTTP/2\.0 POST /acs-push/messages/ h2-token-} } @h2), 40,
   'every one over HTTP/2');
my %handles = map { (split ' ')[3] => 1 } @h2;
is(scalar keys %handles, 40, 'each device once');
is(scalar(grep { m{^HTTP/1\.1 POST /acs-plain/messages/ h2-token-} } @h1), 40,
   'with http2=off: 40 pushes, every one over HTTP/1.1, though the server offers HTTP/2');

$srv->stop;
my @bad = $srv->bad_lines(qw(alert crit emerg error));
is(join("\n", @bad), '', 'no error, alert, crit or emerg');

done_testing();
