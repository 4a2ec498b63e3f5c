# Every JSON tree the module builds is bounded before it is built
# (docs/architecture.md, "JSON"): at most 32 levels of arrays and objects
# and 16,384 values.  Deeper nesting used to overflow a worker's stack when
# the tree was freed.  The key sets are in t/130 and t/155; here the other
# inputs: an incoming call's context (up to the 1 MB event limit), a
# registration body (16 KB), a template (configuration).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MIME::Base64 qw(encode_base64url);
use AcsTest::Util;
use AcsTest::Dispatch;
use AcsTest::Reg;

my $t = AcsTest::Dispatch->new('165-json-limits');
my $srv = $t->srv;

$srv->write_conf(http => $t->hubs_conf, server => <<'SERVER');
        location = /eg { acs_notify_eventgrid hub=main voip_hub=voip; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=;
        }
SERVER
$srv->start;

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $VOIP = 'beef' x 16;
is($srv->register($BOB, 'iphone-voip', platform => 'apns-voip', handle => $VOIP), 201,
   'Bob registers a VoIP token');

my @workers = $srv->workers;

# --- an incoming call whose context nests 300,000 levels (801 KB)

sub call_with_context {
    my ($id, $json) = @_;
    my $icc = encode_base64url('{"alg":"none"}') . '.' . encode_base64url($json) . '.';
    my $call = fresh(fixture('eg-incoming-call.json'));
    $call =~ s/"incomingCallContext": "[^"]*"/"incomingCallContext": "$icc"/ or die;
    $call =~ s/e80026e7-e298/$id-e298/ or die;
    return $call;
}

my $deep = call_with_context('a0000001',
    '{"cc":"x","z":' . ('[' x 300_000) . (']' x 300_000) . '}');
ok(length $deep > 800_000, 'the delivery is ' . length($deep) . ' bytes');

my $m = $t->mark;
my ($st) = $t->deliver('/eg', $deep);
is($st, 200, 'a call context 300,000 levels deep: 200');
my ($push) = grep { $_->{handle} eq $VOIP } $t->since($m);
ok($push && $push->{status} == 201, 'the call is pushed') or diag explain [$t->since($m)];
is($push->{json}{data}{cp}, '', '... without the unreadable context');

($st) = $t->deliver('/eg', call_with_context('a0000002', '{"cc":"ok","z":' . ('[' x 31) . (']' x 31) . '}'));
is($st, 200, 'a context 32 levels deep: 200');
my @calls = grep { $_->{handle} eq $VOIP } $t->since($m);
is($calls[-1]{json}{data}{cp}, 'ok', '... and its cc is read');

($st) = $t->deliver('/eg', call_with_context('a0000003', '{"cc":"no","z":' . ('[' x 32) . (']' x 32) . '}'));
@calls = grep { $_->{handle} eq $VOIP } $t->since($m);
is($calls[-1]{json}{data}{cp}, '', 'a context 33 levels deep is not read');

is(join(',', sort $srv->workers), join(',', sort @workers), 'the worker is the same');

# --- a registration body: 32 levels are a body, 33 and 8,000 are refused

sub put_raw {
    my ($dev, $body) = @_;
    my $path = "/acs/users/" . AcsTest::Server::uri_escape($BOB) . "/devices/$dev";
    my %h = map { /^([^:]+): (.*)$/ ? ($1 => $2) : () }
            split /\n/, AcsTest::Reg::signed_headers('PUT', $path, $body);
    return $srv->request(PUT => $path, $body, \%h);
}

my $base = '{"platform":"fcmv1","handle":"h-1","note":';
($st) = put_raw('n31', $base . ('[' x 31) . (']' x 31) . '}');
is($st, 201, 'a body 32 levels deep is taken');

my ($st2, undef, $b2) = put_raw('n32', $base . ('[' x 32) . (']' x 32) . '}');
is($st2, 400, 'a body 33 levels deep: 400');
like($b2, qr/^\{"error":\{"code":"InvalidJson","message":"the body nests arrays and objects too deep"\}\}$/,
     '... InvalidJson, saying why');

my ($st3) = put_raw('n8000', $base . ('[' x 8000) . (']' x 8000) . '}');
is($st3, 400, 'a body 8,000 levels deep (16 KB): 400');
like($srv->new_log, qr/registration rejected 400 InvalidJson: the body nests arrays and objects too deep/,
     'the refusal is logged');

is(join(',', sort $srv->workers), join(',', sort @workers), 'the worker is still the same');
unlike($srv->whole_log, qr/exited on signal/, 'no worker crashed');

$srv->stop;

# --- a template nesting 33 levels is a configuration error

my $tpl = "'{\"aps\":{\"alert\":\"x\"},\"z\":" . ('[' x 31) . (']' x 31) . "}'";
$srv->write_conf(http => $t->hubs_conf, server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid hub=main;
            acs_notify_template ChatMessageReceived apns $tpl;
        }
SERVER
my ($ok, $out) = $srv->test_conf;
ok($ok, 'a template 32 levels deep loads') or diag $out;

$tpl = "'{\"aps\":{\"alert\":\"x\"},\"z\":" . ('[' x 32) . (']' x 32) . "}'";
$srv->write_conf(http => $t->hubs_conf, server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid hub=main;
            acs_notify_template ChatMessageReceived apns $tpl;
        }
SERVER
($ok, $out) = $srv->test_conf;
ok(!$ok, 'a template 33 levels deep is refused');
like($out, qr/acs_notify_template ChatMessageReceived apns: the payload nests arrays and objects too deep/,
     '... saying why');

done_testing();
